<%@ page contentType="text/plain; charset=UTF-8" session="false" %>tomcat app
